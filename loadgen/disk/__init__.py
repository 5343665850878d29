"""The disk job (job), its target file or device (target) and opening beneath a directory (beneath)."""
