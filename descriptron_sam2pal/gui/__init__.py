"""PyQt5 building blocks shared by the plugin panels: the image canvas (``canvas``) and
background workers for engine calls (``workers``)."""
