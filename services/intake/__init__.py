"""Intake: where a dossier enters the bus (``POST /dossiers``), with its receipt code and due date."""
