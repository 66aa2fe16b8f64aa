"""Export a fine-tune as one official InternVL2 folder: merged LoRA, checked keys, proven answers.

``trained_state`` reads what training saved, ``merge`` builds the full-precision model and folds the
LoRA in, ``official_folder`` writes the official layout, ``checks`` measures QLoRA drift and
reloads the folder, ``convert_cli`` runs them in order (``xtuner-ext convert-official``).
"""
