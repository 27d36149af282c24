"""correo.delivery"""
