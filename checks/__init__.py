"""Backup verification: sources, schedules, verdicts and history."""
