"""`router spec validate|test|schema`: what a partner engineer runs on a spec folder."""
