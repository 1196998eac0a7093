"""Device drivers, each behind a small interface chosen by configuration."""
