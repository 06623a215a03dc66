"""The synthetic worlds that ship with the code (no downloads): Shapes images with ground truth
and captions (`shapes`), rendered 3D scenes for novel view synthesis (`shapes3d`) and videos of
moving shapes for image-to-video (`shapes_video`)."""
