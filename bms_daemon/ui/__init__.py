"""What a person at a terminal reads besides the data: explanations of mistakes in the files
they wrote, and progress lines for long commands.  No BMS logic here."""
