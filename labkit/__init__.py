"""labkit: the library behind One-Pixel Lab.

Importing the package is cheap: it loads no data, builds no model and touches no
device. Import the submodules you need::

    from labkit import data, models, train, attacks, evaluate, profiles
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
