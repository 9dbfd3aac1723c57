"""The five LeDeR services. None imports another; they share only `events`."""
