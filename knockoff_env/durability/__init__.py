"""What keeps a paid attack: the journal of answers, atomic checkpoints and run directories."""
