"""Member analysis: visit facts from paid orders, figures per store and period, RFM segments."""
