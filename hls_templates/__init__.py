"""C++ headers and templates, shipped as the data package ``flow.hls_templates`` (pyproject.toml)."""
