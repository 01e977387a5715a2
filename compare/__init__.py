"""compare: the Keras lesson trained in minitensor and in tf.keras, side by side.

Modules: :mod:`compare.data` (the digits and the lesson's splits), :mod:`compare.experiments`
(every model the lesson trains, as data), :mod:`compare.engines` (build and train one experiment in
either engine, parity or independent mode), :mod:`compare.parity` (tolerances and verdicts),
:mod:`compare.report` (figures, HTML, Markdown and JSON) and ``python -m compare`` (the command
line). Importing the package imports neither TensorFlow nor minitensor.
"""
