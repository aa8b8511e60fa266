"""The built-in element types, one class per type on `engine.element.ElementBase`. Importing
this package imports nothing; `runtime.catalog` finds every element class in its modules, so
adding a type is one new class in a module here."""
