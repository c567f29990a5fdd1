"""The tracker: the supervision view of every dossier (timeline, holder, deadlines, stuck legs, stats)."""
