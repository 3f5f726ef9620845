"""mcode's first-party plugins (installed as ``mcode.plugins``): each folder is a plugin with an
``mcode-plugin.toml``, loaded exactly like a third-party one (``mcode/plugin_host/``)."""
