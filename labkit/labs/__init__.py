"""The labs: one module per lab (or group of labs), holding what that lab runs and what it concludes.

A lab's module holds its plan (which models, which images, which attacks), its settings (sizes per profile are
read from the profile's section for it, ``labkit.profiles.Profile.lab``), its own tables and verdicts, and the names
of its result record and of the steps in it that others read (``LAB``, ``..._STEP``: ``labkit.records`` stores a
lab's record under the notebook's name). What labs share stays outside: methods (``labkit.attacks``,
``labkit.defences``, ``labkit.apr``, ``labkit.models``, ``labkit.train``), measurement (``labkit.evaluate``,
``labkit.suites``), statistics (``labkit.stats``), storage (``labkit.cache``, ``labkit.records``) and presentation
(``labkit.plotting``, ``labkit.widgets``, ``labkit.report``: the verdict rules and sentences several labs use). A
notebook imports its lab's module; inside labkit only ``labkit.claims`` does (it judges the labs' records with the
labs' own verdicts, finding them by the names each module exports), and ``labkit.findings`` above it (each lab's key
result, the landing page). Labs 01-02 run the book's shared protocol (``labkit.evaluate.evaluate_model``, the attacks
of ``labkit.attacks``) on the profile's model and need no module of their own.

* ``su``: Lab 02b, Su et al.'s study on their own three networks, and the verdicts on the paper's claims.
* ``defence_baselines``: Labs 03-04, the replayed-vs-re-run table of the input transformations (and its summary),
  the gradient diagnostics and training costs of the training-time defences.
* ``apr_tables``: Labs 03-06, their attack-suite rows beside the APR paper's Tables 1 and 3 (the seed table) and
  the paired verdicts on its claims (a defence lowers the ASR; removing a component of APR raises it).
* ``apr_paper``: Labs 05-07, the suites of the APR paper's Tables 1 and 3, the overhead timings, and Lab 07's table
  and verdicts on its Table 4.
* ``full_budget``: Lab 05b, DE at the papers' budget (400 x 100) on the images Lab 05's suite missed, on Lab 05's
  undefended model and APR: was the suite strong enough?
* ``attention_maps``: Lab 08, the gated APR variants attacked, the explorer's images and figures, and the test of
  "attacks succeed where attention is low".
* ``recovery``: Lab 09, JPEG against FGSM and the one-pixel "class recovery": the paper's Table I and its verdicts.
* ``survey``: Labs 10-11, the survey's attack x defence grid, its tables and verdicts.
* ``verification``: Lab 12, one-pixel proofs: the bracket per model and a model trained to be proven.
"""
