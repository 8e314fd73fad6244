"""The review bot, git-native review store and promotion gates."""
