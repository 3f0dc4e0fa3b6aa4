"""Built-in task sources; each module turns one offline dataset into a `Task`."""
