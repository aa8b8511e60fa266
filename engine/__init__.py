"""Pure flow-engine logic: models, validation, scheduling, events. Importable without Ray."""
