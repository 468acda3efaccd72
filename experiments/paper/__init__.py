"""Small-scale reproductions of the paper's experiments: Figure 1 (MLP on digits) and Figures 2-3
(learning rates with the demo BN-Inception). Heavy imports (torch, matplotlib) stay in the modules."""
