"""The coupon replica and the redemption of coupons by orders."""
