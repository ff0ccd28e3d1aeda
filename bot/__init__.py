"""Private-domain membership programme server for WeChat Official Accounts and WeCom."""
