"""MNIST-1D, MLP student (100-100), L2T-DLN: the default experiment, with our default settings of
the method (benchmarks/suite.py measures them on seven tasks against tuned cross-entropy; README,
"Results"; the full tables in benchmarks/results/README.md).

Where it departs from `default_config()` (the method as the paper describes it):
- the DLN is bounded (`dln.slope_bound=1`): every item's slope lies between zero and its binary
  cross-entropy's, so the loss can take away from cross-entropy's push but never add to it nor
  reward a wrong answer. It has no learned overall scale (`dln.learn_scale=False`, the library's
  default): a teacher that looks a few steps ahead gains most, in the short run, by shrinking the
  whole loss, i.e. the student's step, which costs accuracy in the end (the short-horizon bias of
  greedy meta-learning); without the scale it can only reshape the loss item by item. Dropping the scale
  lifted the suite's mean gain over tuned CE from +0.05 to +0.70 points over its seven tasks, and
  from +0.72 to +1.43 on four MNIST-1D tasks we did not tune on, on three seeds each; ten seeds
  put this default at +0.09 and, drawn again, -0.15 on the suite's six MLP tasks: about +3 under
  label noise, level with CE on the clean tasks (benchmarks/results/README.md, rounds 5 and 6);
- every item keeps a tenth of binary cross-entropy's push (`dln.slope_floor=0.1`): without it
  the teacher learned, on real images under label noise (Fashion-MNIST, 40 % symmetric or
  pair-flip), a cliff: no push at all on any item the student is unsure of (p_y below 0.5), nor
  on a wrong class it is sure of; a loss blind to every mistake the student has not already
  corrected, and late in training a student drifting into its own mistakes: 5 of 10 seeds lost
  5-61 points after their best evaluation. With the floor none did, and the gains rose
  (benchmarks/results/README.md, "Fashion-MNIST");
- the student keeps cross-entropy's usual rate (0.1): with the bound, the worst the teacher can do
  is slow the student down, never push it past the rate CE is stable at (a higher rate, 0.2, that
  the teacher had to learn to damp gained on one task and collapsed seeds on others:
  benchmarks/results/README.md);
- the teacher minimises the *calibrated* validation cross-entropy (`meta.val_objective=
  calibrated_ce`: CE after a temperature fitted on the same batch), so it gains nothing by making
  an overconfident student stop early: plain validation CE rewards that long before accuracy stops
  rising;
- the teacher moves the DLN in steps ten times larger (`teacher.output_scale=1e-2`) and learns at
  Adam rate 3e-3;
- every hypergradient sees half of the validation split (`meta.val_batch_size=250`), a different
  half each time, not all 500 examples.
For cross-entropy on this task use configs/mnist1d_ce.py (rate 0.1). On another task, train at the
rate you have tuned cross-entropy to (`--config.optim.learning_rate`), as benchmarks/suite.py does.
"""

from l2t_jax.config import default_config


def get_config():
  config = default_config()
  config.dln.slope_bound = 1.0
  config.dln.slope_floor = 0.1
  config.teacher.output_scale = 1e-2
  config.teacher.learning_rate = 3e-3
  config.meta.val_batch_size = 250
  config.meta.val_objective = "calibrated_ce"
  return config
