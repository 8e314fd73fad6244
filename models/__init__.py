"""The code model: index, corpus, training and completion (needs the `model` extra)."""
