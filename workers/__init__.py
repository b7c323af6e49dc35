"""Workers the supervisor runs, one subprocess per job."""
