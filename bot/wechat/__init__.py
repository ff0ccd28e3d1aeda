"""WeChat protocol: callback views, crypto, parsing, dedupe and the reply budget."""
