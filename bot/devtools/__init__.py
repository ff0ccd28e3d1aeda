"""Development tools: fake WeChat platform, simulator, dev clock. Never production paths."""
