"""Platform modules: each describes one platform's metadata protocol (see base.Provider)."""
