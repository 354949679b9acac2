"""Training through TRL: recipes as YAML data, one small module per concern."""
