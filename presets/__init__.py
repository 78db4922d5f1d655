"""segkd's shipped presets (YAML), installed as the package `segkd.presets`."""
