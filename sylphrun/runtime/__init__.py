"""Executing runs: the step runtime (replay-or-record), one worker process, the supervisor."""
