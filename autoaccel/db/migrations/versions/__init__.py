"""One file per schema revision; revision ids are ``0001``, ``0002``, ... (see ``docs/database.md``)."""
