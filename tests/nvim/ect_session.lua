-- Drives real Neovim (headless) with `ect lsp` attached; run by tests/test_lsp_neovim.py.
-- env: ECT_REPO (the repository), ECT_PY (python), ECT_OUT (JSON lines written here),
-- ECT_LOG (server log), ECT_SCENARIO ('full' or 'quit').
local repo, out_path = os.getenv('ECT_REPO'), os.getenv('ECT_OUT')
local scenario = os.getenv('ECT_SCENARIO') or 'full'

local function emit(tbl)
  local f = assert(io.open(out_path, 'a'))
  f:write(vim.json.encode(tbl) .. '\n')
  f:close()
end

local function fail(msg)
  emit({ step = 'error', message = msg })
  vim.cmd('qa!')
end

vim.api.nvim_create_autocmd('FileType', {
  pattern = 'python',
  callback = function(args)
    vim.lsp.start({
      name = 'ect',
      cmd = { os.getenv('ECT_PY'), '-m', 'ect', 'lsp', '--log-file', os.getenv('ECT_LOG') },
      root_dir = repo,
      workspace_required = true,
    }, { bufnr = args.buf })
  end,
})

local progress = {}
vim.api.nvim_create_autocmd('LspProgress', {
  callback = function(ev)
    local value = ev.data and ev.data.params and ev.data.params.value or {}
    table.insert(progress, value.kind)
  end,
})

local function client()
  return vim.lsp.get_clients({ name = 'ect' })[1]
end

local function wait(ms, what, cond)
  if not vim.wait(ms, cond, 50) then
    fail('timed out waiting for ' .. what)
    return false
  end
  return true
end

local function diags(pattern, bufnr)
  local found = {}
  for _, d in ipairs(vim.diagnostic.get(bufnr)) do
    if d.message:find(pattern, 1, true) then
      table.insert(found, d)
    end
  end
  return found
end

local function set_and_save(path, lines)
  vim.cmd('edit ' .. repo .. '/' .. path)
  vim.api.nvim_buf_set_lines(0, 0, -1, false, lines)
  vim.cmd('write')
  return vim.api.nvim_get_current_buf()
end

local function complete(line, col)
  local c = client()
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(0) },
    position = { line = line, character = col },
  }
  local items = {}
  vim.wait(60000, function()
    local res = vim.lsp.buf_request_sync(0, 'textDocument/completion', params, 5000) or {}
    for _, r in pairs(res) do
      local result = r.result or {}
      items = result.items or result
    end
    return #items > 0
  end, 200)
  return items
end

local core = { 'def add(a, b):', '    """Sum of two numbers."""', '    return a + b', '', '',
  'def scale(x, k=2):', '    return x * k' }
local hang = { 'def add(a, b):', '    while True:', '        pass', '', '',
  'def scale(x, k=2):', '    return x * k' }

local function main()
  vim.cmd('edit ' .. repo .. '/acme/util.py')
  if not wait(30000, 'attach', function() return client() ~= nil and client().initialized end) then return end
  local c = client()
  emit({ step = 'attach', encoding = c.offset_encoding })

  if scenario == 'quit' then
    set_and_save('acme/core.py', hang)
    emit({ step = 'hanging' })
    vim.wait(120000, function() return vim.uv.fs_stat(out_path .. '.quit') ~= nil end, 50)
    vim.cmd('qa!')
    return
  end

  -- completion after a non-ASCII string: `print("café", core.)` (the column counts utf-8 bytes)
  local buf = vim.api.nvim_get_current_buf()
  local n = vim.api.nvim_buf_line_count(buf)
  local text = 'print("café", core.'
  vim.api.nvim_buf_set_lines(buf, n, n, false, { text .. ')' })
  local items = complete(n, #text)
  local labels = {}
  for _, it in ipairs(items) do table.insert(labels, it.label) end
  emit({ step = 'completion', labels = labels, column = #text })
  vim.api.nvim_buf_set_lines(buf, n, n + 1, false, {})
  vim.cmd('write')

  -- a failing change: a diagnostic in the saved file
  local lines = vim.deepcopy(core)
  lines[3] = '    return a - b'
  local core_buf = set_and_save('acme/core.py', lines)
  if not wait(90000, 'a diagnostic in core.py', function() return #diags('failing test', core_buf) > 0 end) then
    return
  end
  local d = diags('failing test', core_buf)[1]
  local related = (d.user_data and d.user_data.lsp and d.user_data.lsp.relatedInformation) or {}
  emit({ step = 'failing', line = d.lnum, message = d.message, related = #related })
  set_and_save('acme/core.py', core)
  wait(90000, 'core.py clean', function() return #vim.diagnostic.get(core_buf) == 0 end)

  -- a verified fix: remove an import, apply the code action
  vim.cmd('edit ' .. repo .. '/acme/util.py')
  local ubuf = vim.api.nvim_get_current_buf()
  local ulines = vim.api.nvim_buf_get_lines(ubuf, 0, -1, false)
  local kept = {}
  for _, l in ipairs(ulines) do
    if l ~= 'from acme.core import add' then table.insert(kept, l) end
  end
  set_and_save('acme/util.py', kept)
  if not wait(90000, 'NameError diagnostic', function() return #diags('not defined', ubuf) > 0 end) then return end
  local nd = diags('not defined', ubuf)[1]
  local lsp_diag = nd.user_data.lsp
  local res = vim.lsp.buf_request_sync(ubuf, 'textDocument/codeAction', {
    textDocument = { uri = vim.uri_from_bufnr(ubuf) },
    range = lsp_diag.range,
    context = { diagnostics = { lsp_diag } },
  }, 90000) or {}
  local actions = {}
  for _, r in pairs(res) do
    for _, a in ipairs(r.result or {}) do table.insert(actions, a) end
  end
  local titles = {}
  for _, a in ipairs(actions) do table.insert(titles, a.title) end
  if #actions == 0 then return fail('no code action') end
  vim.lsp.util.apply_workspace_edit(actions[1].edit, c.offset_encoding)
  vim.cmd('write')
  wait(90000, 'util.py clean', function() return #vim.diagnostic.get(ubuf) == 0 end)
  emit({
    step = 'fix',
    titles = titles,
    preferred = actions[1].isPreferred == true,
    text = table.concat(vim.api.nvim_buf_get_lines(ubuf, 0, -1, false), '\n'),
    left = #vim.diagnostic.get(ubuf),
  })

  -- a hanging test: the timeout diagnostic names it
  local hbuf = set_and_save('acme/core.py', hang)
  local function timed_out()
    return #diags('timed out', hbuf) > 0 and #diags('timed out', nil) > 1
  end
  if not wait(90000, 'timeout diagnostics', timed_out) then return end
  local td = {}
  for _, x in ipairs(diags('timed out', nil)) do
    table.insert(td, { file = vim.api.nvim_buf_get_name(x.bufnr), message = x.message })
  end
  wait(10000, 'progress end', function() return progress[#progress] == 'end' end)
  emit({ step = 'timeout', diagnostics = td, in_saved = #diags('timed out', hbuf), progress = progress })

  -- save again: a test hangs while the editor is killed (by the test, with kill -9)
  vim.cmd('write')
  emit({ step = 'hanging' })
  vim.wait(600000, function() return false end, 1000)
end

local ok, err = pcall(main)
if not ok then fail(tostring(err)) end
