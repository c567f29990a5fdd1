"""The router: walks each dossier through its procedure's route, one agency leg at a time."""
