"""(placeholder: filled by the models issue)"""
