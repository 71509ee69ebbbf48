"""`make bench`: Tarry's speed, each figure beside a limit measured in the same run."""
