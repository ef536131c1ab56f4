"""Subscribers: who gets the digest, with which sections, and how they manage that."""
