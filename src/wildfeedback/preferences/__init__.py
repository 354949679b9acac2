"""Preference data from feedback signals: candidates, generation, guards, exports."""
