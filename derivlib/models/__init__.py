"""Models that turn a prompt into a derivation: ``t5`` (fine-tuned seq2seq: building, training,
decoding; with ``tokenization`` for LaTeX and ``syntax`` for bracket-constrained decoding) and
``llm`` (chat LLMs behind any OpenAI-compatible endpoint, with a response cache). Nothing here
knows about run directories; the stages do."""
