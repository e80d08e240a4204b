"""Visit outcomes sent back by caseworkers: import, validation, storage, and labels."""
