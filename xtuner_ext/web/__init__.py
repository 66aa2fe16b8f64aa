"""``xtuner-ext web``: a Gradio page to chat with a base and a fine-tuned InternVL2 side by side.

``loading`` turns model folders into chat-ready models (or a message saying what is wrong),
``inputs`` checks what a user typed and uploaded, ``streaming`` runs one chat turn token by token,
``app`` builds the page and ``launch`` is the command line. Gradio is imported only by ``app``.
"""
