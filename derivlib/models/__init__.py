"""Models that turn a prompt into a derivation: ``t5`` (fine-tuned seq2seq) and ``llm`` (chat LLMs
behind any OpenAI-compatible endpoint, with a response cache)."""
