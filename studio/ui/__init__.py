"""Widgets: the main window, its three workspaces (Image, Write, Explore), the jobs panel and the
error bar. Widgets read and command studio.state; they never import an ML library."""
