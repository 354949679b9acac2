"""Feedback signals: per user turn, was the user satisfied with the reply before it?"""
