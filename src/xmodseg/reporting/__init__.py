"""Tables, paired comparisons, plots and the markdown report built from metrics documents."""
