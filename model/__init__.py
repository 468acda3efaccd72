"""BN-Inception: architecture (Table 5 as data), datasets, training, population statistics, weight import."""
