"""The state directory as a whole: who may write it (``lock``)."""
