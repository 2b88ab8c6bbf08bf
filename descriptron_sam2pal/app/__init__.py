"""The standalone workspace application: a Qt host window above the plugin panels (gui/)."""
