"""One construct per logical unit; stacks only wire these together."""
