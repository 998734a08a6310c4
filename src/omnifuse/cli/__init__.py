"""The ``omnifuse`` command line (``omnifuse --help``)."""
