"""The dashboard's screens: the runs list, one run, and the modals."""
