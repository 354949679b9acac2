"""Evaluation guided by checklists that come from the users' own feedback."""
