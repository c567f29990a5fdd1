"""The service shell: the app, settings, Kafka clients and start-up checks every service runs with."""
